"""The small core beside the plugin: configuration, database engines and locks, the XMLDB schema
builder, the Moodle + IOMAD read model and the demo-site generator. It never imports the plugin."""
