from django.urls import path

from readerstudy.operations import views

app_name = "operations"

# <id:...> is core.converters.IdConverter, registered by CoreConfig.ready().
urlpatterns = [
    path("", views.study_list, name="studies"),
]
