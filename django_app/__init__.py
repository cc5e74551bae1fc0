"""The Django app of tracking-adapter: add ``"django_app"`` to ``INSTALLED_APPS``."""
