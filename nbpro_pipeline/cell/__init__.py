"""One (provider, resolution) cell after its run: its ledger read once (``ledger``), what it holds now and
what the run changed (``state``), its checks (``checks``) and what the UI shows of it (``view``);
``review.review_cell`` does all of it for the ``generated_images`` asset."""
