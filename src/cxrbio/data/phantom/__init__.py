"""The built-in phantom data set: seven classes with planted findings and known truth (docs/data.md).

Split by what each part simulates: :mod:`.anatomy` (the thorax and its masks), :mod:`.findings`
(the six planted findings), :mod:`.sites` (acquisition sites, burned-in labels and markers) and
:mod:`.generate` (rendering and writing the data set). The names below are the package's API.
"""

from cxrbio.data.phantom.findings import FINDINGS, LOCALISED
from cxrbio.data.phantom.generate import (
    HIDDEN_SOURCE_MANIFEST,
    PHANTOM_VERSION,
    generate_phantom,
    parse_severity,
    partial_null_classes,
    read_design,
    render_image,
)
from cxrbio.data.phantom.sites import SITES, Site, corner_label_box, parse_shortcut

__all__ = ["FINDINGS", "HIDDEN_SOURCE_MANIFEST", "LOCALISED", "PHANTOM_VERSION", "SITES", "Site", "corner_label_box",
           "generate_phantom", "parse_severity", "parse_shortcut", "partial_null_classes", "read_design", "render_image"]
