"""DIALS reflection flag bits (the ``flags`` column, ``std::size_t``).

Values are those of ``dials.array_family.flex.reflection_table.flags`` (checked
against DIALS 3.12 at run time: ``flex.reflection_table.flags.names``). Note that
``excluded_for_refinement`` is bit 25 and ``scaled`` bit 26, and that the
background-overlap bit is called ``overlapped_bg``.
"""

from __future__ import annotations

from enum import IntFlag

__all__ = ["Flags", "FLAG_ROWS"]


class Flags(IntFlag):
    """Bits of a reflection's ``flags`` value, named as in DIALS."""

    predicted = 1 << 0
    observed = 1 << 1
    indexed = 1 << 2
    used_in_refinement = 1 << 3
    strong = 1 << 5
    reference_spot = 1 << 6
    dont_integrate = 1 << 7
    integrated_sum = 1 << 8
    integrated_prf = 1 << 9
    integrated = integrated_sum | integrated_prf
    overloaded = 1 << 10
    overlapped_bg = 1 << 11
    overlapped_fg = 1 << 12
    in_powder_ring = 1 << 13
    foreground_includes_bad_pixels = 1 << 14
    background_includes_bad_pixels = 1 << 15
    includes_bad_pixels = foreground_includes_bad_pixels | background_includes_bad_pixels
    bad_shoebox = (
        overloaded | overlapped_bg | overlapped_fg | in_powder_ring | includes_bad_pixels
    )
    bad_spot = bad_shoebox  # alias, as in DIALS
    used_in_modelling = 1 << 16
    centroid_outlier = 1 << 17
    failed_during_background_modelling = 1 << 18
    failed_during_summation = 1 << 19
    failed_during_profile_fitting = 1 << 20
    bad_reference = 1 << 21
    user_excluded_in_scaling = 1 << 22
    outlier_in_scaling = 1 << 23
    excluded_for_scaling = 1 << 24
    bad_for_scaling = user_excluded_in_scaling | outlier_in_scaling | excluded_for_scaling
    excluded_for_refinement = 1 << 25
    bad_for_refinement = excluded_for_refinement | centroid_outlier
    scaled = 1 << 26


def _flag_rows() -> tuple[tuple[str, int], ...]:
    """(name, value) in the order ``dials.show show_flags=True`` prints them.

    Sorted by value; of two names with one value (bad_shoebox, bad_spot) the
    later-defined one is kept, as DIALS's ``flags.values`` dict does.
    """
    by_value: dict[int, str] = {}
    for name, member in Flags.__members__.items():
        by_value[int(member)] = name
    return tuple((name, value) for value, name in sorted(by_value.items()))


FLAG_ROWS: tuple[tuple[str, int], ...] = _flag_rows()
"""(flag name, value) pairs in ``dials.show`` order, one per distinct value."""
