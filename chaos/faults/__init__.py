"""Fault types, keyed by their `type:`. Adding one: a module here and one line below."""

from chaos.faults.bot_mitigation import BotMitigation
from chaos.faults.dns import Dns
from chaos.faults.garbage import Garbage
from chaos.faults.geo_block import GeoBlock
from chaos.faults.hang import Hang
from chaos.faults.hosts_entry import HostsEntry
from chaos.faults.http_error import HttpError
from chaos.faults.packet_filter import PacketFilter
from chaos.faults.partial import Partial
from chaos.faults.reset import Reset
from chaos.faults.route_blackhole import RouteBlackhole
from chaos.faults.slow import Slow

FAULT_TYPES = [
    HostsEntry,
    RouteBlackhole,
    PacketFilter,
    GeoBlock,
    BotMitigation,
    Dns,
    HttpError,
    Partial,
    Hang,
    Slow,
    Reset,
    Garbage,
]

FAULTS = {cls.model_fields["type"].default: cls for cls in FAULT_TYPES}
