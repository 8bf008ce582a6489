"""The benchmarks' baseline view (BENCH_BASELINE_VIEW): routed only when a bench run asks for it."""

import importlib

import pytest
from django.test import override_settings
from django.urls import clear_url_caches


@pytest.fixture
def reload_urls():
    import retellghl.urls

    def reload():
        importlib.reload(retellghl.urls)
        clear_url_caches()

    yield reload
    with override_settings(BENCH_BASELINE_VIEW=False):  # the suite's default, whatever a test changed
        reload()


def test_the_baseline_view_is_not_routed_by_default(client):
    assert client.post("/bench/baseline", data=b"{}", content_type="application/json").status_code == 404


def test_when_enabled_it_answers_204_through_the_same_middleware(settings, reload_urls, client):
    settings.BENCH_BASELINE_VIEW = True
    reload_urls()
    response = client.post("/bench/baseline", data=b'{"event":"ping"}', content_type="application/json")
    assert response.status_code == 204  # a POST without a CSRF token: exempt, like the Retell endpoints
    assert response["X-Frame-Options"] == "DENY"  # the middleware stack ran


@pytest.mark.django_db
def test_the_store_only_floor_verifies_the_signature_and_stores_the_body(settings, reload_urls, client):
    from calls.models import CallEvent
    from tests.conftest import retell_signature

    settings.BENCH_BASELINE_VIEW = True
    reload_urls()
    body = '{"event":"call_ended","call":{"call_id":"c1","transcript":"Agent: héllo"}}'.encode()
    unsigned = client.post("/bench/store", data=body, content_type="application/json")
    assert unsigned.status_code == 401 and not CallEvent.objects.exists()

    signed = client.post(
        "/bench/store",
        data=body,
        content_type="application/json",
        HTTP_X_RETELL_SIGNATURE=retell_signature(body),
    )
    assert signed.status_code == 204
    assert list(CallEvent.objects.values_list("event", "raw_body")) == [("bench_store", body.decode())]
