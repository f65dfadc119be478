"""What a "block" of MobileNetV2 is, for ``finetune-N``.

Keras's MobileNetV2 has a stem (``Conv1``), 17 inverted-residual blocks -- ``expanded_conv``
(block 0) and ``block_1`` ... ``block_16`` -- and a final 1x1 convolution (``Conv_1``,
``Conv_1_bn``, ``out_relu``). The study fine-tunes "the top N blocks"; we count the
inverted-residual blocks from the top and count the final 1x1 conv with the first, so:

* ``finetune-1``  trains block_16 + Conv_1;
* ``finetune-3``  trains block_14 ... block_16 + Conv_1;
* ``finetune-17`` trains every block; only the stem stays frozen.
"""

from __future__ import annotations

import re

N_BLOCKS = 17
_BLOCK = re.compile(r"^block_(\d+)_")
_TOP = ("Conv_1", "Conv_1_bn", "out_relu")


def block_index(layer_name: str) -> int | None:
    """Inverted-residual block (0..16) a layer belongs to; the top 1x1 conv counts as 16; None for the stem/input."""
    if layer_name.startswith("expanded_conv"):
        return 0
    if match := _BLOCK.match(layer_name):
        return int(match.group(1))
    if layer_name in _TOP:
        return N_BLOCKS - 1
    return None


def in_top_blocks(layer_name: str, n: int) -> bool:
    """Whether the layer is in the top ``n`` blocks (``1 <= n <= 17``)."""
    index = block_index(layer_name)
    return index is not None and index >= N_BLOCKS - n
