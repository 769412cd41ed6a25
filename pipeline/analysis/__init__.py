"""Analysis of results: plots and the loss along eigenvectors."""
