"""The catalog: the spec's nine tables (schema in `sql/`), SQLAlchemy Core metadata and a repository.

Modules: `migrations` (apply `sql/`), `tables` (Core `MetaData`, enum value constants), `records`
(frozen dataclasses returned by the repository), `repository` (`Catalog`, `catalog_from_connection`).
Nothing is imported here eagerly, so importing the package stays cheap.
"""
