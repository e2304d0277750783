"""The unsubscribe page's words in every shipped locale: what the WSGI app (:mod:`cartrescue.webhook`)
shows a person who clicked a reminder's unsubscribe link.

Owns the text only (data, no logic). ``{address}`` stands for the address (escaped by the page).
The survey's page has its own words (:mod:`cartrescue.survey_words`); ``busy_*`` is the page of
either when the ledger cannot be reached (503).
"""

from __future__ import annotations

PAGE_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Unsubscribe",
        "question": "Stop reminders about your shopping cart to {address}?",
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done_body": "{address} will get no more cart reminders from us.",
        "invalid_title": "This unsubscribe link is not valid",
        "invalid_body": "The link may have been shortened or changed. Use the link from the e-mail as it is, "
                        "or reply to the e-mail and ask to be unsubscribed.",
        "busy_title": "Please try again in a few minutes",
        "busy_body": "We could not save this just now, so nothing has changed yet. "
                     "Please use the link from the e-mail again in a few minutes.",
    },
    "sv": {
        "title": "Avregistrera",
        "question": "Sluta skicka påminnelser om din varukorg till {address}?",
        "button": "Avregistrera",
        "done_title": "Du är avregistrerad",
        "done_body": "{address} får inga fler påminnelser om varukorgen från oss.",
        "invalid_title": "Länken för att avregistrera sig är inte giltig",
        "invalid_body": "Länken kan ha förkortats eller ändrats. Använd länken i e-postmeddelandet som den är, "
                        "eller svara på meddelandet och be att bli avregistrerad.",
        "busy_title": "Försök igen om några minuter",
        "busy_body": "Vi kunde inte spara det här just nu, så ingenting har ändrats än. "
                     "Använd länken i e-postmeddelandet igen om några minuter.",
    },
    "hu": {
        "title": "Leiratkozás",
        "question": "Ne küldjünk több emlékeztetőt a kosaradról a(z) {address} címre?",
        "button": "Leiratkozom",
        "done_title": "Leiratkoztál",
        "done_body": "A(z) {address} címre nem küldünk több emlékeztetőt a kosaradról.",
        "invalid_title": "Ez a leiratkozási link nem érvényes",
        "invalid_body": "Lehet, hogy a linket lerövidítették vagy módosították. Az e-mailben kapott linket használd "
                        "változtatás nélkül, vagy válaszolj az e-mailre, és kérd a leiratkozást.",
        "busy_title": "Kérjük, próbáld újra néhány perc múlva",
        "busy_body": "Ezt most nem tudtuk elmenteni, így még semmi sem változott. "
                     "Néhány perc múlva használd újra az e-mailben kapott linket.",
    },
    "ru": {
        "title": "Отписаться",
        "question": "Больше не присылать напоминания о корзине на {address}?",
        "button": "Отписаться",
        "done_title": "Вы отписались",
        "done_body": "Мы больше не будем присылать напоминания о корзине на {address}.",
        "invalid_title": "Эта ссылка для отписки недействительна",
        "invalid_body": "Возможно, ссылку сократили или изменили. Используйте ссылку из письма без изменений "
                        "или ответьте на письмо и попросите отписать вас.",
        "busy_title": "Пожалуйста, повторите через несколько минут",
        "busy_body": "Сейчас нам не удалось это сохранить, поэтому пока ничего не изменилось. "
                     "Откройте ссылку из письма ещё раз через несколько минут.",
    },
    "af": {
        "title": "Teken uit",
        "question": "Hou op om herinneringe oor jou mandjie na {address} te stuur?",
        "button": "Teken uit",
        "done_title": "Jy is uitgeteken",
        "done_body": "{address} sal geen herinneringe oor die mandjie meer van ons kry nie.",
        "invalid_title": "Hierdie uitteken-skakel is nie geldig nie",
        "invalid_body": "Die skakel is dalk verkort of verander. Gebruik die skakel uit die e-pos soos dit is, "
                        "of antwoord op die e-pos en vra om uitgeteken te word.",
        "busy_title": "Probeer asseblief oor 'n paar minute weer",
        "busy_body": "Ons kon dit nie nou stoor nie, so niks het nog verander nie. "
                     "Gebruik asseblief die skakel uit die e-pos oor 'n paar minute weer.",
    },
    "kk": {
        "title": "Жазылымнан бас тарту",
        "question": "{address} мекенжайына себет туралы еске салуларды жіберуді тоқтатамыз ба?",
        "button": "Бас тарту",
        "done_title": "Сіз жазылымнан бас тарттыңыз",
        "done_body": "{address} мекенжайына бұдан былай себет туралы еске салулар жібермейміз.",
        "invalid_title": "Жазылымнан бас тарту сілтемесі жарамсыз",
        "invalid_body": "Сілтеме қысқартылған немесе өзгертілген болуы мүмкін. Хаттағы сілтемені өзгертпей "
                        "пайдаланыңыз немесе хатқа жауап беріп, жазылымнан шығаруды сұраңыз.",
        "busy_title": "Бірнеше минуттан кейін қайталап көріңіз",
        "busy_body": "Мұны қазір сақтай алмадық, сондықтан әзірге ештеңе өзгерген жоқ. "
                     "Бірнеше минуттан кейін хаттағы сілтемені қайта ашыңыз.",
    },
}
