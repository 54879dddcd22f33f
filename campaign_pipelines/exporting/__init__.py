"""Export templates: query the Campaign database and write a file."""
