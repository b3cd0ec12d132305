"""Fakes of the systems referee talks to, shipped so that other projects' tests can use them too.

Like ``panoramisk.testing``, these are installed with the package, pull in nothing beyond
referee's own dependencies, and touch no network but the loopback sockets a test opens. Each
module is imported on its own; importing ``referee.testing`` imports none of them.

:mod:`referee.testing.fake_ksr` plays **Kamailio's KSR module** (app_python3/KEMI) in memory.
Hand a :class:`~referee.testing.fake_ksr.FakeKSR` to a KEMI handler where Kamailio would pass
``KSR``, load one SIP message with ``fake.request(raw)`` or ``fake.reply(raw)``, call the
handler, then read what it did (``replies``, ``relays``, ``header_ops``, ``pv_sets``,
``log``)::

    from referee.kemi import make_handler
    from referee.testing.fake_ksr import FakeKSR

    fake = FakeKSR(defines={"REFEREE_POLICY": '"/tmp/policy.toml"', ...})  # kamailio.cfg's #!define
    handler = make_handler(fake)
    fake.request("REFER sip:1001@example.com SIP/2.0\\r\\n...")  # a REFER to a premium number
    handler.ksr_request_route(None)  # what app_python3 calls; the message is in the fake
    assert fake.replies == [(403, "Transfer to +449001234567 denied: premium-rate (09)")]

:mod:`referee.testing.fake_ami` plays **an Asterisk manager interface** on a loopback TCP port.
A real AMI client (panoramisk, or anything that speaks AMI) logs in to it; the test chooses the
answer to each action, pushes events (or a recorded trace) to every client, and reads the
actions it received::

    from referee.testing.fake_ami import FakeAmi, success

    ami = await FakeAmi(host="127.0.0.1", answers={"BlindTransfer": success()}).start()
    ...  # point the client at ami.host, ami.port with user "referee", secret "secret"
    await ami.push("Event: Newchannel\\r\\nChannel: PJSIP/1002-00000001\\r\\n...\\r\\n\\r\\n")
    await ami.until(lambda: bool(ami.named("BlindTransfer")))
    await ami.close()

:mod:`referee.testing.fake_asterisk` plays **Asterisk's side of an AGI session** (the channel):
it sends the AGI environment, answers ``GET VARIABLE`` from a dict, records ``SET VARIABLE``,
and splits each command as res_agi does, so a test sees the values Asterisk would store.
``call`` connects to a FastAGI server; ``play`` runs over any stream pair (a process AGI's
pipes)::

    from referee.testing.fake_asterisk import agi_env, call

    channel = await call("127.0.0.1", 4573, agi_env("1003", script="transfer-guard"),
                         {"SIPREFERREDBYHDR": "<sip:1002@example.com>"})
    assert channel.variables["REFEREE_ALLOWED"] == "1"

Helpers that only referee's own tests need live in the repository's ``tests/``, not here.
"""
