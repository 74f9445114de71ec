"""python -m scraping_service: the scraping-service API on PORT (default 8002)."""

from shared import run_server

from .settings import ScrapingSettings

if __name__ == "__main__":
    run_server("scraping_service.app:create_app", ScrapingSettings())
