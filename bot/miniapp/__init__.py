"""The dashboard Mini App: an aiohttp.web server for the built front end, its JSON API and live push."""
