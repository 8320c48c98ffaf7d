"""Forms of the projects app."""

from __future__ import annotations

import os

from django import forms
from django.contrib.auth.models import Group

from .permissions import DataPathError, data_roots, resolve_data_path


class NewProjectForm(forms.Form):
    name = forms.CharField(max_length=200)
    group = forms.ModelChoiceField(
        queryset=Group.objects.none(),
        required=False,
        empty_label="(private: only me)",
        help_text="Lab group that will see and work on this project.",
    )
    data_root = forms.CharField(
        label="Data folder",
        max_length=4096,
        help_text="Folder with the images (CBF, NeXus *_master.h5 / .nxs), inside the allowed data roots.",
    )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        if user is not None and user.is_authenticated:
            self.fields["group"].queryset = user.groups.order_by("name")
        roots = data_roots()
        if roots:
            self.fields["data_root"].help_text += " Allowed: " + ", ".join(roots)
            self.fields["data_root"].widget.attrs["placeholder"] = os.path.join(roots[0], "…")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the project a name")
        return name

    def clean_data_root(self) -> str:
        try:
            path = resolve_data_path(self.cleaned_data["data_root"])
        except DataPathError as exc:
            raise forms.ValidationError(str(exc)) from None
        if not os.path.isdir(path):
            raise forms.ValidationError(f"{self.cleaned_data['data_root']} is not an existing folder")
        return path


#: largest reference MTZ a form takes (MB)
MAX_REFERENCE_MB = 200


def _unreadable_reference(path: str) -> str | None:
    """Why ``path`` is no reference a run can use (not a file, not a readable MTZ with
    intensities or amplitudes, not a PDB/mmCIF model with atoms), or None if it is one."""
    import logging

    from processing.errors import XtalError
    from processing.io.mtz import read_reference_intensities
    from processing.io.reference import is_model_file, read_model

    if not os.path.isfile(path):
        return f"{path}: no such file"
    try:
        read_model(path) if is_model_file(path) else read_reference_intensities(path)
    except XtalError as exc:
        return str(exc)
    except Exception:  # a reader's own failure on a hostile file: one clear message, the rest in the log
        logging.getLogger(__name__).warning("reading reference %s", path, exc_info=True)
        return f"{path}: not a readable MTZ, PDB or mmCIF file"
    return None


class StageRunForm(forms.Form):
    """"Run / rerun <stage>": the stage's parameters (from its dataclass), the parent
    run and the sweeps. Valid means the parameter dataclass could be built."""

    parent = forms.ModelChoiceField(queryset=None, empty_label=None, label="Input run",
                                    help_text="The run whose outputs this run starts from.")
    sweeps = forms.TypedMultipleChoiceField(coerce=int, widget=forms.CheckboxSelectMultiple,
                                            label="Sweeps", help_text="Included sweeps are ticked.")
    words = forms.CharField(
        required=False, max_length=4000, label="More parameters",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "beam.fix=all outlier.algorithm=tukey"}),
        help_text="key=value words as on the command line; DIALS's names are accepted. They override the "
                  "fields above.")

    def __init__(self, stage: str, project, *args, **kwargs):
        from .models import StageRun
        from .runs import available_sweeps, default_parent, left_out_sweeps
        from .stages import form_fields, previous_stage

        kwargs.setdefault("prefix", stage)
        super().__init__(*args, **kwargs)
        self.stage = stage
        self.project = project
        self.params = None
        candidates = project.runs.filter(stage=previous_stage(stage), status__in=StageRun.USABLE)
        self.fields["parent"].queryset = candidates.order_by("-finished", "-id")
        self.fields["parent"].label_from_instance = lambda r: (
            (f"#{r.pk} {r.get_stage_display()} ({r.finished:%Y-%m-%d %H:%M})" if r.finished else f"#{r.pk}")
            + (f" — partial: {r.error}" if r.status == StageRun.Status.PARTIAL else ""))
        latest = default_parent(project, stage)
        self.fields["parent"].initial = latest.pk if latest else None
        parent = latest
        if self.is_bound:
            try:
                parent = candidates.get(pk=int(self.data.get(self.add_prefix("parent"), "")))
            except (ValueError, TypeError, StageRun.DoesNotExist):
                parent = latest
        self.available = available_sweeps(parent) if parent else []
        #: the input run's sweeps this run cannot process, with the reason: ``[{index, name, error}]``
        self.left_out = left_out_sweeps(parent)
        self.input_run = parent
        self.fields["sweeps"].choices = [(s["index"], s["name"]) for s in self.available]
        included = set(project.sweeps.filter(included=True).values_list("name", flat=True))
        self.fields["sweeps"].initial = [s["index"] for s in self.available if s["name"] in included]
        from .review import apply_flags

        apply_flags(self)  # reviewers' flags: "exclude" unticked with its reason (flagged_out), "suspect" badged
        self.param_names = []
        for f in form_fields(stage):
            if f.name in self.fields:
                raise ValueError(f"parameter {f.name} clashes with a form field")
            self.fields[f.name] = forms.CharField(required=False, initial=f.default, help_text=f.help,
                                                  label=f.name, max_length=500)
            self.fields[f.name].widget.attrs["placeholder"] = f.default
            self.param_names.append(f.name)
        if "reference" in self.param_names:
            self.fields["reference_upload"] = forms.FileField(
                required=False, label="Reference MTZ or model (upload)",
                help_text=f"A merged MTZ (IMEAN, I or F) or an atomic model (PDB, mmCIF), at most "
                          f"{MAX_REFERENCE_MB} MB; or give the path of one "
                          "inside the data folders in the reference field.")

    @property
    def has_input(self) -> bool:
        return self.fields["parent"].queryset.exists()

    def param_fields(self):
        return [self[name] for name in self.param_names]

    def clean(self):
        from .stages import ParamsError, build_params, words_from_values

        data = super().clean()
        values = {name: data.get(name, "") for name in self.param_names}
        if "reference" in self.param_names:
            values["reference"] = self._reference(data, values.get("reference", ""))
        extra = (data.get("words") or "").split()
        try:
            self.params = build_params(self.stage, words_from_values(self.stage, values) + extra)
            given = getattr(self.params, "reference", None) if "reference" in self.param_names else None
            if given and given != values.get("reference"):  # typed among the words: the same checks
                checked = self._reference_path(given, "words")
                if checked is None:
                    self.params = None
                elif checked != given:
                    import dataclasses

                    self.params = dataclasses.replace(self.params, reference=checked)
        except ParamsError as exc:
            typed = {w.partition("=")[0].strip() for w in extra}
            if exc.field in self.param_names and exc.field not in typed and not self._aliased(exc.field, typed):
                self.add_error(exc.field, str(exc))
            elif extra:
                self.add_error("words", str(exc))
            else:
                self.add_error(None, str(exc))
        return data

    def _reference(self, data, typed: str) -> str:
        """The reference MTZ's path: an upload saved into the project's work folder, or a
        typed path inside the data roots (or the project's own folder)."""
        upload = data.get("reference_upload")
        if upload:
            return self._save_upload(upload) or ""
        text = (typed or "").strip()
        if not text or text.lower() == "none":
            return text
        return self._reference_path(text, "reference") or ""

    def _reference_path(self, text: str, field: str) -> str | None:
        """``text`` resolved (symlinks, ``..``), if it lies inside the data roots (or the
        project's own folder) and reads as a reference (MTZ or model); else None and a
        form error on ``field``."""
        from .permissions import is_inside

        roots = data_roots()
        if "\x00" in text or not roots:
            self.add_error(field, f"{text!r} is outside the allowed data roots")
            return None
        real = os.path.realpath(os.path.join(roots[0], os.path.expanduser(text)))
        work = os.path.realpath(self.project.work_dir) if self.project.work_dir else None
        if not any(is_inside(real, root) for root in roots + ([work] if work else [])):
            self.add_error(field, f"{text} is outside the allowed data roots")
            return None
        error = _unreadable_reference(real)
        if error:
            self.add_error(field, error.replace(real, text))
            return None
        return real

    def _save_upload(self, upload) -> str | None:
        import uuid

        if upload.size > MAX_REFERENCE_MB * 1024 * 1024:
            self.add_error("reference_upload", f"{upload.name} is larger than {MAX_REFERENCE_MB} MB")
            return None
        folder = os.path.join(self.project.work_dir, "uploads")
        os.makedirs(folder, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "._-" else "_" for c in os.path.basename(upload.name))[:80]
        path = os.path.join(folder, f"{uuid.uuid4().hex[:8]}-{name or 'reference.mtz'}")
        with open(path + ".partial", "wb") as f:  # written in full, then renamed
            for chunk in upload.chunks():
                f.write(chunk)
        os.replace(path + ".partial", path)
        error = _unreadable_reference(path)
        if error:
            os.remove(path)
            self.add_error("reference_upload", f"{upload.name}: " + error.replace(path + ": ", "").replace(path, upload.name))
            return None
        return path

    def _aliased(self, field_name: str, keys) -> bool:
        """Whether one of the typed ``keys`` names ``field_name`` (a DIALS alias)."""
        from processing.params import resolve_key

        from .stages import params_class

        return any(resolve_key(params_class(self.stage), k) == field_name for k in keys)

    def selected_sweeps(self) -> list[dict]:
        chosen = set(self.cleaned_data.get("sweeps") or [])
        return [s for s in self.available if s["index"] in chosen]


PRESET_CHOICES = [
    ("tiny", "tiny — 3 crystals × 10 images, small detector (seconds)"),
    ("insulin-24", "insulin-24 — 24 crystals × 50 images on an Eiger 2X 9M: LARGE (GBs, minutes to hours)"),
    ("lysozyme-wedges", "lysozyme-wedges — 8 crystals × 50 images on an Eiger 2X 9M: large"),
    ("microcrystals", "microcrystals — 10 wedges of 1°, 2–5 crystals in the beam at once (seconds)"),
    ("insulin-realistic", "insulin-realistic — 4 crystals × 50 images with a wrong header, ice rings, "
                          "hot pixels, zingers… (under a minute)"),
]


class PresetProjectForm(forms.Form):
    """A new project from simulated data: the simulation runs as a task, then import."""

    name = forms.CharField(max_length=200, required=False,
                           help_text="Default: the preset's name.")
    group = forms.ModelChoiceField(queryset=Group.objects.none(), required=False,
                                   empty_label="(private: only me)")
    preset = forms.ChoiceField(choices=PRESET_CHOICES, initial="tiny", widget=forms.RadioSelect,
                               help_text="The data are simulated into the first data root, then imported. "
                                         "insulin-24 writes several GB of images and takes long to simulate.")

    def __init__(self, *args, user=None, **kwargs):
        kwargs.setdefault("prefix", "preset")
        super().__init__(*args, **kwargs)
        if user is not None and user.is_authenticated:
            self.fields["group"].queryset = user.groups.order_by("name")

    def clean(self):
        data = super().clean()
        if not data.get("name") and data.get("preset"):
            data["name"] = f"Simulated: {data['preset']}"
        if not data_roots():
            raise forms.ValidationError("No data roots are configured (DATA_ROOTS)")
        return data
