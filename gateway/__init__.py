"""noetl-gateway: the API gateway of the NoETL workflow platform."""
