"""Metro 2: the monthly file US lenders furnish to the credit bureaus (../shared/domain/metro2.md).

Pure code, like the lifecycle rules: the field table (`layout`), the codes an account's facts
give (`status`), its 24-month history (`history`), the records and the file (`furnish`,
`writer`) and a validator that re-reads any file (`validator`). The storage layer gathers the
facts; the `bureau_furnishing` flow validates, writes and submits.
"""

from arrears.metro2.furnish import FurnishAccount, FurnishFile, Previous, Reported, build_file, is_furnished
from arrears.metro2.periods import Period
from arrears.metro2.validator import Problem, validate
from arrears.metro2.writer import Furnisher

__all__ = [
    "FurnishAccount",
    "FurnishFile",
    "Furnisher",
    "Period",
    "Previous",
    "Problem",
    "Reported",
    "build_file",
    "is_furnished",
    "validate",
]
