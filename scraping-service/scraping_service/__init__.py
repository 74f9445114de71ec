"""scraping-service: safe fetching, markdown extraction, model summaries and extraction."""
