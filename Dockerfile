# retellghl: one image for both roles. The default command serves the web; run the worker from the same
# image with `python manage.py qcluster`. See docs/deploy.md (this file was written on a machine without
# a Docker daemon and has not been built there; its steps were replayed in a plain virtualenv).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, read from pyproject.toml alone, so a code change reuses this layer. Every
# dependency ships manylinux wheels (psycopg[binary], cryptography): no compiler needed.
COPY pyproject.toml .
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The code runs from /app (manage.py and gunicorn import it from the working directory).
COPY . .

# Static files are baked into the image and served by WhiteNoise. settings.py requires SECRET_KEY when
# DEBUG is off; this value exists for this build step only and is not in the final environment.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v 0

RUN useradd --system --uid 10001 --no-create-home --home-dir /app retellghl
USER retellghl

EXPOSE 8000
# No HEALTHCHECK here: the worker runs from this image too and serves no HTTP. Probe /healthz from the
# load balancer or the orchestrator, for web containers only (docs/deploy.md, "Health checks").
CMD ["gunicorn", "retellghl.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--timeout", "30", \
     "--graceful-timeout", "25", "--access-logfile", "-"]
