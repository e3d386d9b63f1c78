# One image for web, worker and Flower; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY deskwire ./deskwire
COPY webhooks ./webhooks
COPY worker ./worker
COPY rules ./rules
COPY connections ./connections
COPY sdp ./sdp
COPY configfiles ./configfiles
RUN pip install --no-cache-dir -c constraints.txt . && useradd --system --home /app deskwire
COPY examples ./examples
USER deskwire
EXPOSE 8000 5555
CMD ["deskwire", "--help"]
