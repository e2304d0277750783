"""The decide stage of a run: which carts get a message now, with which step, tier and arm.

Sources read the carts and orders; this stage decides; ``cartrescue.compose`` turns a decision
into a message; the channels deliver it. Here: ``eligibility`` (the gates and their reason
codes), ``sequence`` (steps and the calendar: due time, one message a day, quiet hours),
``priority`` (tiers and scores), ``experiments`` (A/B arms), ``newest`` (a customer's newest
cart and withdrawn consent), ``orders`` (the facts a cart's orders give).

It must not know rendering or delivery: no template, no message, no channel. Nothing is
re-exported here; import each module by its own path (``cartrescue.decide.eligibility``).
"""
