"""The survey link of a real message, opened in headless Chromium against the WSGI app on a real
wsgiref server: the bare GET records nothing, the button press records exactly one answer.

Chromium is driven over the DevTools protocol (tests/chromium.py); the button is pressed with
real mouse events, so the browser itself submits the form. Without Chromium the test skips with
the reason, unless ``CARTRESCUE_REQUIRE_SERVICES=1`` makes that a failure.
"""

from __future__ import annotations

import pytest

from cartrescue.screenshot import find_chromium
from cartrescue.survey_words import WORDS
from conftest import Shop, cart, services_required
from test_survey import PAGE, answers, send_step, survey_links, webhook
from test_unsubscribe import local


@pytest.fixture
def browser():
    if find_chromium() is None:
        reason = "headless Chromium not found (apt-get install -y chromium)"
        if services_required():
            pytest.fail(f"CARTRESCUE_REQUIRE_SERVICES is set but {reason}", pytrace=False)
        pytest.skip(reason)
    from chromium import Browser

    with Browser() as opened:
        yield opened


@pytest.mark.browser
def test_a_link_from_a_real_message_records_one_answer_on_the_button_press(shop: Shop, browser) -> None:
    shop.configure(survey={"url": PAGE})
    message = send_step(shop, cart("c1", email="ann@example.com", locale="sv"))["ann@example.com"]
    link = survey_links(message)["delivery_time"]
    with webhook(shop) as base:
        browser.open(local(link, base))
        assert browser.evaluate("document.title") == WORDS["sv"]["page_title"]
        assert browser.evaluate("document.querySelector('input[value=delivery_time]').checked") is True
        assert answers(shop) == []  # the page was fetched with a GET: nothing recorded

        browser.evaluate("document.querySelector('input[name=text]').value = '<b>Leverans</b> tar två veckor'")
        browser.press("button[type=submit]")
        assert browser.evaluate("document.title") == WORDS["sv"]["thanks_title"]
        shown = browser.evaluate("document.body.innerText")
        assert WORDS["sv"]["delivery_time"] in shown and "<b>Leverans</b> tar två veckor" in shown
        assert browser.evaluate("document.querySelectorAll('b').length") == 0  # shown as text, not markup
    [answer] = answers(shop)
    assert (answer["cart_key"], answer["step"], answer["reason"], answer["locale"], answer["answers"]) == \
        ("csv:c1", 1, "delivery_time", "sv", 1)
    assert answer["text"] == "<b>Leverans</b> tar två veckor"
