"""Asterisk's side of the transfer policy: the dialplan guard over AGI and FastAGI.

- :mod:`referee.agi.guard`: channel variables in, :meth:`Policy.decide`, channel variables
  out (sans-I/O, shared by both transports);
- :mod:`referee.agi.process`: the process AGI (a stdlib AGI loop), run by ``agi/referee_transfer_guard.py``;
- :mod:`referee.agi.fastagi` and :mod:`referee.agi.daemon`: the FastAGI server
  (``referee fastagi``), bounded against bad clients.

Importing this package does not import panoramisk; nothing here needs pyst2.
"""
