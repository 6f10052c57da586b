"""URLs of the example project."""

from __future__ import annotations

from django.urls import path

from ratelimit_demo import views

urlpatterns = [
    path("", views.index),
    path("health", views.health),
    path("login", views.login),
    path("search", views.search),
]
