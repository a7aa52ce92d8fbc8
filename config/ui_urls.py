from django.urls import path

from config import ui_views

app_name = "ui"

urlpatterns = [
    path("", ui_views.home, name="home"),
]
