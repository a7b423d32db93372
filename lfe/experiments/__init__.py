"""The modes of ``python -m lfe.main``, one module each, named as the modes are."""
