"""The pager: candidates from several retrievers, selection under budgets, and the page plan."""
