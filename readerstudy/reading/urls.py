from django.urls import path, re_path

from readerstudy.reading import api, views

app_name = "reading"

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("session/<int:session_id>/", views.reading_page, name="session"),
]

api_patterns = (
    [
        path("worklist/", api.WorklistView.as_view(), name="worklist"),
        path("sessions/<int:session_id>/", api.SessionView.as_view(), name="session"),
        path("sessions/<int:session_id>/start/", api.StartSessionView.as_view(), name="start"),
        path("sessions/<int:session_id>/next/", api.NextItemView.as_view(), name="next"),
        path("items/<int:item_id>/", api.ItemView.as_view(), name="item"),
        path("items/<int:item_id>/read/", api.SubmitReadView.as_view(), name="submit"),
        path("items/<int:item_id>/images/<int:index>", api.ImageView.as_view(), name="image"),
        path("items/<int:item_id>/overlay", api.OverlayView.as_view(), name="overlay"),
        # Anything else under /api/ (e.g. a malformed id) answers JSON, like every API error.
        re_path(r"^(?!schema/).*$", api.not_found, name="not-found"),
    ],
    "reading-api",
)
