"""The compose stage of a run: a decided cart becomes a message.

``cartrescue.decide`` says who gets which step; this stage builds what is sent; the channels
deliver it. Here: ``render`` (templates and cart -> subject, text, HTML, SMS text, with
``sandbox_limits`` on what a template may build), ``mime`` (an e-mail's bytes), ``incentives``
(discount codes), ``money`` (locale-exact amounts), ``links`` (safe URLs and their UTM tags).

It must not deliver (no channel, no connection) nor keep the ledger's state; the one exception is
``incentives``, which owns the codes' rows in the ledger (``cr_code``) and allocates one to a
claimed message before it is composed. Nothing is re-exported here; import each module by its
own path (``cartrescue.compose.render``).
"""
