from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "xtalweb.projects"
    label = "projects"
    verbose_name = "Projects"
