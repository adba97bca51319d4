"""The FastAPI app: ``uvicorn app.main:app`` serves it; ``create_app()`` builds one (tests build many)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from app.config import Settings, get_settings
from app.errors import ColorizerError
from app.http_errors import ApiError, as_api_error
from app.observability import RequestContextMiddleware, configure_logging
from app.routes import health, images, page, videos
from app.routes.page import STATIC_DIR
from app.service import Service
from app.unexpected import UnexpectedErrorMiddleware
from app.upload import BodyLimitMiddleware
from app.video.jobs import JobManager


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    service = Service(settings)
    video_jobs = JobManager(service)
    service.background.append(video_jobs.stop)
    watch_at_scrape(service, video_jobs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        await video_jobs.start()
        yield
        await service.stop()

    app = FastAPI(
        title="Colorizer",
        version="0.1.0",
        lifespan=lifespan,
        description="Turns grayscale photographs and videos into plausible colour ones.",
    )
    app.state.service = service
    app.state.video_jobs = video_jobs
    app.include_router(health.router)
    app.include_router(images.router)
    app.include_router(page.router)
    app.include_router(videos.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    install_error_handlers(app, service)
    app.add_middleware(UnexpectedErrorMiddleware, metrics=service.metrics)  # innermost: see app/unexpected.py
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_upload_bytes, read_timeout_s=settings.body_read_timeout_s
    )
    if settings.cors_origin_list:  # outside the body limit, so a 413 or 408 still reaches the page that asked
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=service.metrics)
    return app


def watch_at_scrape(service: Service, video_jobs: JobManager) -> None:
    """Gauges read when /metrics is scraped (off the event loop), for the alerts in deploy/prometheus/rules."""
    m = service.metrics
    m.ready.set_function(lambda: float(service.ready and not service.draining))
    m.in_flight_limit.set_function(lambda: service.tuning.max_in_flight if service.tuning else 0)
    m.waiting_limit.set_function(lambda: service.tuning.max_queue if service.tuning else 0)
    m.video_store_used.set_function(video_jobs.store.usage)
    m.video_store_quota.set(service.settings.video_quota_bytes)


def install_error_handlers(app: FastAPI, service: Service) -> None:
    """Every error leaves as {"detail": sentence, "code": snake_case}, and is counted."""

    def respond(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
        service.metrics.errors.labels(str(status), code).inc()
        return JSONResponse({"detail": detail, "code": code}, status, headers)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return respond(exc.status, exc.code, exc.detail, dict(exc.headers))

    @app.exception_handler(ColorizerError)
    async def core_error(_: Request, exc: ColorizerError) -> JSONResponse:
        edge = as_api_error(exc)  # the core error's status and Retry-After, decided here at the edge
        return respond(edge.status, edge.code, edge.detail, dict(edge.headers))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return respond(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = str(first.get("msg", "bad value")).removeprefix("Value error, ")
        if first.get("type") == "missing":
            what = "is missing"
        elif "UploadFile" in msg:  # a text value where a file belongs; pydantic's message names Python classes
            what = "must be a file (a multipart part with a filename), not a text value"
        else:
            what = f"is invalid ({msg})"
        return respond(
            422,
            "missing_field" if first.get("type") == "missing" else "invalid_field",
            f"the request field '{where}' {what}",
        )


configure_logging()
app = create_app()
