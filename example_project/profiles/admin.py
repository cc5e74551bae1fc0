from django.contrib import admin

from example_project.profiles.models import Account, Profile

admin.site.register(Account)
admin.site.register(Profile)
