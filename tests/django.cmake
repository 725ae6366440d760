# End-to-end tests of the Django example (examples/django): label "django".
add_script_test(django_e2e_kill_restore django bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/django_e2e.sh ${PROJECT_BINARY_DIR})
add_script_test(django_manage_commands django bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/django_manage.sh ${PROJECT_BINARY_DIR})
add_script_test(django_browser_screenshot django bash ${CMAKE_CURRENT_SOURCE_DIR}/e2e/django_browser.sh ${PROJECT_BINARY_DIR})
