# Postbox in a container: docker build -t postbox . && docker run -p 8000:8000 -v postbox:/app/instance postbox
# See docs/OPERATIONS.md ("The container"). tests/test_deployment.py runs these steps as a script and starts the result.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOST=0.0.0.0 PORT=8000
WORKDIR /app

COPY requirements.txt /app/requirements.txt
RUN python -m venv /app/.venv && /app/.venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /app/requirements.txt

COPY . /app
# The catalogues are compiled into the image: no language depends on a writable code tree at start-up.
RUN /app/.venv/bin/pybabel compile -d /app/translations --statistics \
    && test -s /app/translations/ru/LC_MESSAGES/messages.mo && test -s /app/translations/it/LC_MESSAGES/messages.mo \
    && test -s /app/translations/hy/LC_MESSAGES/messages.mo && test -s /app/translations/hi/LC_MESSAGES/messages.mo
# Everything Postbox writes (database, secret key, .eml files) goes to instance/: one volume, owned by the
# unprivileged user the server runs as. A numeric user needs no account in the image.
RUN mkdir -p /app/instance && chown 10001:10001 /app/instance && chmod 0750 /app/instance

USER 10001:10001
VOLUME ["/app/instance"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["/app/.venv/bin/gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"]
