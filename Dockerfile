FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY manage.py ./
COPY project project
COPY notifications notifications
COPY scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
# /data holds the generated secret key; a new named volume mounted there takes
# this directory's owner, so the app user can write it.
RUN useradd --system app && mkdir /data && chown app /data
USER app
EXPOSE 8000
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["python", "-m", "notifications.server", "-b", "0.0.0.0", "-p", "8000", "--proxy-headers", "project.asgi:application"]
