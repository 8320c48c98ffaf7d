"""DIALS-style key=value parameters built into frozen dataclasses."""
from dataclasses import FrozenInstanceError, dataclass

import pytest

from processing.errors import XtalError
from processing.params import describe, from_strings, param, to_json
from processing.importer import ImportParams


@dataclass(frozen=True)
class Example:
    """An example."""

    d_min: float | None = param(None, "high-resolution limit (Å)")
    unit_cell: tuple[float, ...] | None = param(None, "a,b,c,alpha,beta,gamma")
    joint: bool = param(True, "index sweeps jointly")
    nproc: int = param(1, "processes")


def test_parse_dials_style_words():
    p = from_strings(Example, ["d_min=1.54", "unit_cell=67,67,67,109,109,109", "joint=false", "nproc=2"])
    assert p.d_min == 1.54 and p.unit_cell == (67.0, 67.0, 67.0, 109.0, 109.0, 109.0)
    assert p.joint is False and p.nproc == 2
    assert to_json(p)["unit_cell"] == [67.0, 67.0, 67.0, 109.0, 109.0, 109.0]
    with pytest.raises(FrozenInstanceError):
        p.nproc = 3


@pytest.mark.parametrize("word,message", [
    ("dmin=2", "unknown parameter 'dmin'"),
    ("nproc=two", "expected an integer"),
    ("d_min=nan", "not a number"),
    ("joint=maybe", "expected true or false"),
    ("1.5", "key=value"),
])
def test_bad_words_one_message(word, message):
    with pytest.raises(XtalError, match=message):
        from_strings(Example, [word])


def test_image_range_pair_and_describe():
    p = from_strings(ImportParams, ["image_range=1,20"], paths=("a",))
    assert p.image_range == (1, 20)
    with pytest.raises(XtalError, match="expected 2 comma-separated values"):
        from_strings(ImportParams, ["image_range=1,2,3"])
    names = [row[0] for row in describe(ImportParams)]
    assert names == ["paths", "image_range"]


# --- limits, aliases and fields of the stage parameter classes --------------------------

from processing.indexing import IndexParams  # noqa: E402
from processing.integration import IntegrateParams  # noqa: E402
from processing.params import StageParams, limits, limits_text  # noqa: E402
from processing.refinement import RefineParams  # noqa: E402
from processing.spotfinding import FindSpotsParams  # noqa: E402


@pytest.mark.parametrize("cls, word, field, message", [
    (FindSpotsParams, "gain=0", "gain", "gain=0.0: must be > 0"),  # gt
    (FindSpotsParams, "sigma_strong=-1", "sigma_strong", "sigma_strong=-1.0: must be ≥ 0"),  # ge
    (IndexParams, "hkl_tolerance=0.6", "hkl_tolerance", "hkl_tolerance=0.6: must be > 0 and ≤ 0.5"),  # le
    (RefineParams, "threshold_probability=1", "threshold_probability",
     "threshold_probability=1.0: must be > 0 and < 1"),  # lt
    (IntegrateParams, "background_algorithm=fancy", "background_algorithm",
     "background_algorithm=fancy: must be one of glm, simple, constant"),  # choices
    (FindSpotsParams, "kernel_size=3,0", "kernel_size", "kernel_size=3,0: each value must be ≥ 1"),  # per element
    (RefineParams, "beam_fix=all,sideways", "beam_fix", "beam_fix=sideways: must be one of"),  # choice per element
])
def test_each_limit_is_one_message_naming_its_field(cls, word, field, message):
    with pytest.raises(XtalError) as err:
        from_strings(cls, [word])
    assert err.value.field == field
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_limits_are_checked_on_direct_construction_and_none_is_not_checked():
    with pytest.raises(XtalError) as err:
        IntegrateParams(d_min=-1.0)
    assert err.value.field == "d_min" and str(err.value) == "d_min=-1.0: must be > 0"
    assert IntegrateParams(d_min=None).d_min is None
    with pytest.raises(XtalError) as err:
        FindSpotsParams(d_min=3.0, d_max=2.0)  # a rule between fields: __post_init__
    assert err.value.field == "d_min"
    with pytest.raises(XtalError) as err:
        IndexParams(method="real_space_grid_search")
    assert err.value.field == "unit_cell"


def test_limits_for_forms():
    assert limits(FindSpotsParams, "max_strong_pixel_fraction") == {"ge": 0, "le": 1}
    assert limits(FindSpotsParams, "force_2d") == {}
    assert limits_text(FindSpotsParams, "max_strong_pixel_fraction") == "≥ 0 and ≤ 1"
    assert limits_text(IndexParams, "method") == "one of fft3d, fft1d, real_space_grid_search"
    assert limits_text(RefineParams, "random_seed") == ""


@pytest.mark.parametrize("cls, word, field, value", [
    (FindSpotsParams, "spotfinder.threshold.dispersion.gain=2", "gain", 2.0),
    (FindSpotsParams, "threshold.algorithm=dispersion", "threshold_algorithm", "dispersion"),
    (FindSpotsParams, "spotfinder.filter.ice_rings.filter=true", "ice_rings", True),
    (FindSpotsParams, "mp.nproc=4", "nproc", 4),
    (IndexParams, "indexing.method=fft1d", "method", "fft1d"),
    (IndexParams, "index_assignment.simple.hkl_tolerance=0.25", "hkl_tolerance", 0.25),
    (RefineParams, "refinement.reflections.outlier.algorithm=tukey", "outlier_algorithm", "tukey"),
    (RefineParams, "refinement.parameterisation.beam.fix=all", "beam_fix", ("all",)),
    (RefineParams, "scan_varying=False", "scan_varying", "false"),  # DIALS's spelling of a choice
    (IntegrateParams, "profile.fitting=false", "profile_fitting", False),
    (IntegrateParams, "integration.profile.fitting=false", "profile_fitting", False),
    (IntegrateParams, "prediction.d_min=2", "d_min", 2.0),
    (IntegrateParams, "integration.background.algorithm=simple", "background_algorithm", "simple"),
    (IntegrateParams, "profile.valid_foreground_threshold=0.5", "valid_foreground_threshold", 0.5),
])
def test_dials_paths_resolve_for_every_stage(cls, word, field, value):
    assert getattr(from_strings(cls, [word]), field) == value


@dataclass(frozen=True)
class Aliased(StageParams):
    """Two fields where a DIALS path's last word names the wrong one."""

    algorithm: str = param("a", "a field called like the path's last word")
    background_algorithm: str = param("glm", "the field the path means", aliases=("background.algorithm",))


def test_exact_name_then_alias_then_last_word():
    assert from_strings(Aliased, ["algorithm=b"]).algorithm == "b"
    p = from_strings(Aliased, ["integration.background.algorithm=simple"])
    assert p.background_algorithm == "simple" and p.algorithm == "a"
    assert from_strings(Aliased, ["some.path.algorithm=c"]).algorithm == "c"


def test_auto_is_none_for_optional_fields_only():
    p = from_strings(FindSpotsParams, ["filter.min_spot_size=Auto", "d_min=auto", "max_separation=auto"])
    assert p.min_spot_size is None and p.d_min is None and p.max_separation is None
    assert from_strings(RefineParams, ["scan_varying=Auto"]).scan_varying == "auto"  # a choice, not None
    with pytest.raises(XtalError, match="nproc=auto: expected an integer") as err:
        from_strings(FindSpotsParams, ["mp.nproc=auto"])
    assert err.value.field == "nproc"


def test_unknown_key_names_the_key_as_field():
    with pytest.raises(XtalError, match="unknown parameter 'spotfinder.filter.dmin'") as err:
        from_strings(FindSpotsParams, ["spotfinder.filter.dmin=2"])
    assert err.value.field == "spotfinder.filter.dmin"
    assert str(err.value).startswith("unknown parameter")


def test_field_survives_pickling():
    import pickle

    e = pickle.loads(pickle.dumps(XtalError("gain=-1.0: must be > 0", field="gain")))
    assert str(e) == "gain=-1.0: must be > 0" and e.field == "gain"
    assert XtalError("no spots").field is None
