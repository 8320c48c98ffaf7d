from django.contrib import admin

from .models import Project, StageRun, Sweep, SweepRun


class SweepInline(admin.TabularInline):
    model = Sweep
    extra = 0
    fields = ("name", "n_images", "detector", "wavelength", "distance", "included")
    readonly_fields = ("name", "n_images", "detector", "wavelength", "distance")


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "group", "data_root", "created")
    list_filter = ("group",)
    search_fields = ("name", "owner__username", "data_root")
    inlines = [SweepInline]


@admin.register(Sweep)
class SweepAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "name", "n_images", "detector", "wavelength", "included")
    list_filter = ("included",)
    search_fields = ("name",)


@admin.register(StageRun)
class StageRunAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "stage", "status", "progress", "created", "started", "finished")
    list_filter = ("stage", "status")
    search_fields = ("project__name", "error")
    filter_horizontal = ("parents",)


@admin.register(SweepRun)
class SweepRunAdmin(admin.ModelAdmin):
    list_display = ("id", "run", "index", "name", "status", "progress", "started", "finished")
    list_filter = ("status",)
    search_fields = ("name", "error")
