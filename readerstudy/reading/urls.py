from django.urls import path, re_path

from readerstudy.reading import api, views

app_name = "reading"


# <id:...> is core.converters.IdConverter, registered by CoreConfig.ready().
urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("session/<id:session_id>/", views.reading_page, name="session"),
    path("study/<id:study_id>/instructions/", views.instructions, name="instructions"),
]

api_patterns = (
    [
        path("worklist/", api.WorklistView.as_view(), name="worklist"),
        path("sessions/<id:session_id>/", api.SessionView.as_view(), name="session"),
        path("sessions/<id:session_id>/start/", api.StartSessionView.as_view(), name="start"),
        path("sessions/<id:session_id>/next/", api.NextItemView.as_view(), name="next"),
        path("items/<id:item_id>/", api.ItemView.as_view(), name="item"),
        path("items/<id:item_id>/read/", api.SubmitReadView.as_view(), name="submit"),
        path("items/<id:item_id>/images/<id:index>", api.ImageView.as_view(), name="image"),
        path(
            "items/<id:item_id>/series/<id:position>/images/<id:index>",
            api.SeriesImageView.as_view(),
            name="series-image",
        ),
        path("items/<id:item_id>/overlay", api.OverlayView.as_view(), name="overlay"),
        # Anything else under /api/ (e.g. a malformed id) answers JSON, like every API error.
        re_path(r"^(?!schema/).*$", api.not_found, name="not-found"),
    ],
    "reading-api",
)
