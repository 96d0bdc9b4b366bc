def test_world(world, app, client):
    assert app.jinja_env.bytecode_cache is not None
    assert client.get("/login").status_code == 200
