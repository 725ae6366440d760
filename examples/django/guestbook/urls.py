from django.contrib import admin
from django.urls import path

from notes import views

urlpatterns = [
    path("", views.index, name="index"),
    path("notes.json", views.notes_json, name="notes_json"),
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
]
