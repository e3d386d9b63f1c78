"""Alembic migrations of deskwire's database: the one way its tables are created and changed.

``deskwire db upgrade`` runs them (through :mod:`deskwire.schema`); developers add a
revision with ``alembic -c deskwire/migrations/alembic.ini revision --autogenerate -m …``
(see docs/development.md, "Adding a column").
"""
