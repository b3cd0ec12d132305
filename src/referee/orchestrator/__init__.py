"""The AMI transfer orchestrator: one panoramisk AMI client per PBX, channel and bridge state
from events (resynchronised with CoreShowChannels and BridgeList on every (re)connect), an
explicit state machine per transfer, and the operations blind, attended, complete and cancel.
"""
