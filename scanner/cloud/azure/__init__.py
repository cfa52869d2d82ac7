"""The Azure provider: Resource Manager (compute) and blob (SAS page-blob) sides."""
