"""Model families: a registry of name -> builder; adding a family is adding one file here."""
