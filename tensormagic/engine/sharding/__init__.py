"""Sharded tensors (``torch.distributed.tensor.DTensor``, FSDP2's parameters) described truthfully.

Pure (torch only), and silent on the network unless asked: the default report of a DTensor runs
no DTensor op, so it issues no collective; ``%tensorinfo --global`` is the one exception, and
only after every rank has said it is there.  Modules, one job each:

- :mod:`.detect`: is an object a DTensor or an FSDP2 module (``torch.distributed`` is imported
  only for objects whose type comes from it).
- :mod:`.layout`: :class:`~.layout.ShardingInfo`: mesh, placements, every rank's block.
- :mod:`.local_stats`: statistics of this rank's shard, labelled with their scope.
- :mod:`.rendezvous`: a bounded meeting of every rank through the store, before any collective.
- :mod:`.global_stats`: ``--global``: one all_gather of a few numbers per rank, merged exactly.
- :mod:`.report`: the ``%tensorinfo`` report of a DTensor.
- :mod:`.modules`: what a module's, ``%todevice``'s and ``%%autograd``'s reports say of DTensors.
"""

from __future__ import annotations

from tensormagic.engine.sharding.detect import as_dtensor, is_dtensor, is_fsdp_module
from tensormagic.engine.sharding.layout import RankShard, ShardingInfo, block_label
from tensormagic.engine.sharding.rendezvous import MeetingError

__all__ = ["MeetingError", "RankShard", "ShardingInfo", "as_dtensor", "block_label", "is_dtensor", "is_fsdp_module"]
