"""The local lab: a cached Debian sid rootfs with real Kamailio and real Asterisk, run by chroot on loopback.

Modules:
- ``topology``: the fixed node/address table and the credentials, read from the local inventory;
- ``rootfs``: build (debootstrap) or reuse the cached rootfs;
- ``chroot``: bind mounts, daemons started and stopped by PID, and the idempotent teardown;
- ``provision``: the Ansible playbook run through the chroot connection;
- ``scenario``: SIPp scenarios under ``tests/scenarios/`` with a pcap per run;
- ``ladder``: RFC 3515 style ladder diagrams (text and SVG) parsed from the pcap with scapy.
"""
