"""Images whose content is a word, for SPAE: digits named in several languages, rendered words."""
