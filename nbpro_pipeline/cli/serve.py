"""``nbpro serve-galleries``: a local storage root's gallery pages, images and report charts over HTTP."""

from __future__ import annotations

import click


@click.command("serve-galleries")
@click.argument("storage_root", metavar="ROOT", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback: this machine only).")
@click.option("--port", default=8788, show_default=True, type=click.IntRange(0, 65535))
def serve_galleries_command(storage_root: str, host: str, port: int) -> None:
    """Serve ROOT's gallery/, images/, quarantine/ and reports/ (nothing else of it), so the links in the
    Dagster UI open: set NBPRO_STORAGE_URL=http://HOST:PORT for the code location (make dev does both)."""
    from nbpro_pipeline.presentation.serve import gallery_server

    server = gallery_server(storage_root, host, port)
    click.echo(f"galleries of {storage_root} on http://{host}:{server.server_address[1]}/gallery/", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
