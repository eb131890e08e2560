"""Search techniques beside the plain DARTS step: the skip-connect collapse guard, DARTS+
early stopping and the DARTS- auxiliary skip (:mod:`.collapse`)."""
