"""llm386_demo, and runserver serving static files without DEBUG."""
