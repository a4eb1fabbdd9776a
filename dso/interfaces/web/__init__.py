"""`dso ui`: the local review-and-vote page for DAO members (`app.build_app`)."""
