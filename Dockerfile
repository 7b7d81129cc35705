FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN SECRET_KEY=build JWT_SIGNING_KEY=build python manage.py collectstatic --noinput

EXPOSE 8000
CMD ["gunicorn", "megahub.wsgi:application", "--config", "gunicorn.conf.py", "--bind", "0.0.0.0:8000"]
