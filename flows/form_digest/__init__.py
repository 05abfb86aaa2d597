"""The form-digest automation: new Google Forms answers -> a digest in Notion, chat and outbox."""
