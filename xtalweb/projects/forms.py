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
