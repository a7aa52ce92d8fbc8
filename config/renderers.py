"""Renderers, in a module of their own: DRF imports them while rest_framework.views loads."""

from __future__ import annotations

from typing import Any

from rest_framework.renderers import BrowsableAPIRenderer


class WriteOnlyBrowsableAPIRenderer(BrowsableAPIRenderer):
    """The browsable API without HTML forms built from serializers.

    DRF re-renders a failed form with the submitted values (write-only fields included), which
    would put a secret back into the page. Only the raw-content form stays, and it is always
    empty.
    """

    def get_context(self, data: Any, accepted_media_type: Any, renderer_context: Any) -> Any:
        context = super().get_context(data, accepted_media_type, renderer_context)
        # Pygments' stylesheet (when Pygments is installed) would go into an inline <style>,
        # which the CSP refuses; the page highlights its JSON with a static script anyway.
        context["code_style"] = None
        return context

    def get_rendered_html_form(self, data: Any, view: Any, method: str, request: Any) -> Any:
        return None

    def get_raw_data_form(self, data: Any, view: Any, method: str, request: Any) -> Any:
        form = super().get_raw_data_form(data, view, method, request)
        if form is not None:
            form.initial = {**form.initial, "_content": ""}
        return form
