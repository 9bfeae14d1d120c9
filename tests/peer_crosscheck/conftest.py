"""Registers the `peers` marker of the side-by-side tests here, so that they run under `--strict-markers`
before the marker is listed in setup.cfg (the lead's file)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "peers: side by side against the peers' own code; needs RFVIDEO_PEERS_DIR (see the test)"
    )
